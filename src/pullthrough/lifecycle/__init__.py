"""Space that manages itself: templates, lifecycle policies, garbage collection, a size cap."""
