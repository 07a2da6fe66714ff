"""Console pages of releases: views.py (the pages, the live card, the actions),
builder.py (the plan builder and its preview), present.py (what a card shows, and the
reasons a viewer cannot act)."""
