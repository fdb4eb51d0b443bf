"""The one shared library of Hydra's services: errors, identity, fields, db, gRPC, events, mail, batching."""
