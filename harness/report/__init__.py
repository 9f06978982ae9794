"""What records look like to a reader: terminal tables, plots, the HTML report."""
