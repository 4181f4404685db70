"""goa inside other frameworks (LangGraph) and behind other protocols."""
