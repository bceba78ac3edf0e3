"""palaestra.agents (see DESIGN.md); populated by later issues."""
