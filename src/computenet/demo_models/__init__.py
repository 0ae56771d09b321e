"""Small model servers and workloads written for the demos (`cnet demo --serve`, bench/serve.py).

`tinygen` is a real, tiny text generator with an OpenAI-compatible HTTP API
(standard library only, so a job can run it with any Python 3); `trace` holds
an excerpt of the Azure LLM inference trace and replays it.
"""
