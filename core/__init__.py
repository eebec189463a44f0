"""What every Kenpin app shares, and the bottom layer: errors for people, HTTP helpers, stored
files and upload limits. It imports no other Kenpin app (docs/architecture.md)."""
