"""Experiments judged phase by phase, as EXP-Bench judges them: design (D), implementation (I),
execution (E) and conclusion (C), each against a hidden rubric, with a monitor (M) that zeroes a
run that cheated. `judge` asks a model for a verdict per phase."""
