"""A plugin module that cannot be imported, as a third-party package with a missing dependency fails."""

raise ImportError("planted: this plugin's dependency is not installed")
