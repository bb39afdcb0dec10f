__version__ = "0.0.1"

# The public facade: `from nanollama import LLM` gives the class with every chapter's methods attached
# (generate from 03b, apply_chat_template from 06). Imported lazily so `import nanollama` stays cheap.
def __getattr__(name):
    if name == 'LLM':
        from nanollama.kvcache import LLM
        import nanollama.generate, nanollama.chat  # noqa: F401  (they patch LLM)
        return LLM
    raise AttributeError(f"module 'nanollama' has no attribute {name!r}")
