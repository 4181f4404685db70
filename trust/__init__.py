"""TRUST: decentralised auditing of LLM reasoning (hierarchical DAGs, commit-reveal
consensus, a verifiable ledger, root-cause attribution). Built on goa's inference
adapter."""

__all__: list[str] = []
