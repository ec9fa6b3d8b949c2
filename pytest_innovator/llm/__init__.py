"""The LLM layer: the OpenAI-compatible client agents use, model server processes (vLLM, the
embedded model) and the embedded CPU model itself."""
