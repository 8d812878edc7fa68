"""The ground floor: errors, settings, the spec, and the metric/family catalogue as plain data.

Nothing here imports the rest of mallard; every other package may import it.
"""
