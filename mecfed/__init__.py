"""mecfed: federation of ETSI MEC systems over Mfm/Mff gRPC APIs."""

__version__ = "0.1.0"
