class Unavailable:
    """A torchvision name that the benchmark's stand-in does not provide: it can be named and
    constructed (MultiVae builds some as default arguments), and raises when used."""

    def __init__(self, *args: object, **kwargs: object):
        pass

    def __call__(self, *args: object, **kwargs: object):
        raise NotImplementedError("torchvision is a stand-in in the benchmark environment (benchmarks/stubs)")
