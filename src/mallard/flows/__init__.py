"""Prefect flows: each reads like a recipe of tasks from mallard.tasks."""
