"""Question generators: the OpenAI-compatible one (any server speaking the API) and, later, a
local model. All share :class:`QuestionGenerator`."""
