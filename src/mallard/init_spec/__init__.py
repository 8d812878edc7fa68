"""`mallard init`: infer a schema and a task from a data sample (infer.py; one column's
declaration: columns.py), size the search (plan.py), then write a commented spec that runs as
is (render.py). The inference rules are in those modules' docstrings."""

from mallard.init_spec.columns import Column
from mallard.init_spec.infer import Draft, infer, read_sample
from mallard.init_spec.render import check, render

__all__ = ["Column", "Draft", "check", "infer", "read_sample", "render"]
