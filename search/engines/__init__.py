"""Search engines: each translates the one space and calls the one trial runner."""
