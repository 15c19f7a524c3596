"""servinglab: one ML pipeline (penguin species), served as a monolith or as microservices.

The pipeline itself (schema, features, model, postprocessing, artifacts) lives here so both
architectures run exactly the same code; only the transport differs.
"""
