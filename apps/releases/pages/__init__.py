"""Console pages of releases (issue 14): views.py (the pages, the live card, the actions),
builder.py (the plan builder and its preview), present.py (what a card shows, and the
reasons a viewer cannot act)."""
