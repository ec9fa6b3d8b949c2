"""Recorded runs as training data: keep/drop labels per step (labels), chat fine-tuning JSONL
(export), and ResearchGym's node files as this project's trajectories (researchgym)."""
