"""``cerebelum worker``: runs the Python steps of one queue, claimed from StepRun resources.

User code runs here only, never in the operator. ``lease`` decides who may run what (pure),
``runner`` calls one step function in a thread of its own, and ``loop`` watches, claims,
renews and reports.
"""
