"""`mallard init`: infer a schema and a task from a data sample (infer.py), then write a
commented spec that runs as is (render.py). The inference rules are in infer.py's docstring."""

from mallard.init_spec.infer import Column, Draft, infer, read_sample
from mallard.init_spec.render import check, render

__all__ = ["Column", "Draft", "check", "infer", "read_sample", "render"]
