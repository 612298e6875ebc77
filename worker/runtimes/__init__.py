"""Agent runtimes, loaded lazily by name through `worker.runtime.get_runtime`."""
