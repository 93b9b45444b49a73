"""FastAPI front end of PEng4NN, installed as ``peng4nn_service``: accepts architectures and curves over
HTTP, streams predictions, and runs the whole service on one machine (`serve`). Shares Redis with the
workers only through ``peng4nn_store``; never imports ``peng4nn_worker`` (nor torch)."""
