"""palaestra.evol (see DESIGN.md); populated by later issues."""
