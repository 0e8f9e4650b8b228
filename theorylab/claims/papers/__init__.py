"""One module per paper: its citation, its claims, their tiers and figures (copy one to add a paper)."""
