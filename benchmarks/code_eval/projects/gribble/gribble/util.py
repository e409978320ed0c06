"""Helpers over pipelines."""


def smush_all(pipeline, texts):
    return [pipeline.churn(t) for t in texts]


def frisk_buffer(sink):
    return list(sink.vorpal_buffer)


def glean_words(text, sep=" "):
    return [w for w in text.split(sep) if w]
