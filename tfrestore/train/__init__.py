"""Supervised training as a stepper of `core.loop.Loop`: the custom distributed step, exact resume, validation and
store-backed trainings."""
