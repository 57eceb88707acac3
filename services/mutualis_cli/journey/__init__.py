"""A commune's working day, driven from outside as its people would: used by `mutualis demo`,
the end-to-end tests, the drills and the end-to-end benchmark."""
