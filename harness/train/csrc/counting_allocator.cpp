// A CPU allocator that counts live bytes, the CPU analogue of CUDA's memory_allocated/max_memory_allocated.
//
// It replaces c10's default CPU allocator (same alloc_cpu/free_cpu underneath) and counts the tensors
// allocated by one "owner" thread (the training loop), whichever thread frees them; tensors other threads
// allocate (gloo's scratch) are left out, as CUDA's allocator statistics leave out NCCL's buffers.  The
// profiler's memory events cannot give this: a tensor freed on a gloo worker thread (the last reference
// held by a finished collective) is never reported there, so its live bytes drift upward step after step.
#include <c10/core/CPUAllocator.h>
#include <c10/core/impl/alloc_cpu.h>
#include <pybind11/pybind11.h>

#include <atomic>
#include <cstdint>
#include <mutex>
#include <thread>
#include <unordered_map>

namespace {

struct Counter {
  std::atomic<int64_t> current{0};
  std::atomic<int64_t> peak{0};

  void add(int64_t n) {
    int64_t now = current.fetch_add(n) + n;
    int64_t seen = peak.load();
    while (now > seen && !peak.compare_exchange_weak(seen, now)) {
    }
  }
  void sub(int64_t n) { current.fetch_sub(n); }
  void reset_peak() { peak.store(current.load()); }
};

Counter owner;
std::atomic<std::thread::id> owner_thread{};
std::mutex blocks_mutex;
std::unordered_map<void*, int64_t>* blocks = new std::unordered_map<void*, int64_t>();  // owner's, never destroyed

void counted_free(void* data) {
  if (data != nullptr) {
    int64_t nbytes = 0;
    {
      std::lock_guard<std::mutex> guard(blocks_mutex);
      auto it = blocks->find(data);
      if (it != blocks->end()) {
        nbytes = it->second;
        blocks->erase(it);
      }
    }
    owner.sub(nbytes);
  }
  c10::free_cpu(data);
}

struct CountingAllocator final : c10::Allocator {
  c10::DataPtr allocate(size_t nbytes) override {
    void* data = c10::alloc_cpu(nbytes);
    if (data != nullptr && nbytes > 0 && std::this_thread::get_id() == owner_thread.load()) {
      {
        std::lock_guard<std::mutex> guard(blocks_mutex);
        (*blocks)[data] = static_cast<int64_t>(nbytes);
      }
      owner.add(static_cast<int64_t>(nbytes));
    }
    return {data, data, &counted_free, c10::Device(c10::DeviceType::CPU)};
  }
  c10::DeleterFnPtr raw_deleter() const override { return &counted_free; }
  void copy_data(void* dest, const void* src, std::size_t count) const override {
    default_copy_data(dest, src, count);
  }
};

CountingAllocator* allocator = new CountingAllocator();  // must outlive every tensor
c10::Allocator* previous = nullptr;  // the allocator install() replaced

void install() {
  owner_thread.store(std::this_thread::get_id());
  if (c10::GetCPUAllocator() != allocator) {
    previous = c10::GetCPUAllocator();
  }
  c10::SetCPUAllocator(allocator, /*priority=*/100);
}

// Tensors allocated while installed keep their counted deleter, so they are still counted when freed.
void uninstall() {
  if (previous != nullptr && c10::GetCPUAllocator() == allocator) {
    c10::SetCPUAllocator(previous, /*priority=*/100);
  }
}

void reset_peak() { owner.reset_peak(); }
int64_t current_bytes() { return owner.current.load(); }
int64_t peak_bytes() { return owner.peak.load(); }

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("install", &install, "Count every later CPU allocation; the calling thread becomes the owner");
  m.def("uninstall", &uninstall, "Put back the allocator install() replaced (counting stops for new tensors)");
  m.def("reset_peak", &reset_peak, "Set the peak to the current live bytes");
  m.def("current_bytes", &current_bytes, "Live bytes of the owner thread's tensors");
  m.def("peak_bytes", &peak_bytes, "Largest live bytes since install or the last reset_peak");
}
