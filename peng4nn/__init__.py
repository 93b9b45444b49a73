"""PEng4NN: predict a network's final accuracy from its early validation curve and stop training early.

The library never imports fastapi, redis or rq; torch is imported only by the
modules that train (model.py, train.py, datasets loaders).
"""

__version__ = "0.1.0"
