"""Configuration files users already know: ip xfrm lines (manual SAs) and swanctl.conf."""
