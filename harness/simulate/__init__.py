"""The real step under fake tensors and a fake process group (`spacetime simulate`), any world size, on a CPU."""
