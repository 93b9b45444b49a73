"""FastAPI front end of PEng4NN: accepts architectures and curves over HTTP, streams predictions."""
