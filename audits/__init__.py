"""The audit pipeline: hold recordings in, what callers heard and what went wrong out.

Stages, data flowing one way (each takes and returns plain dataclasses from
`audits.data`):

    audio.load -> segment.split -> transcribe -> messages.group
    -> classify.classify_messages -> rules.find -> report.render / store.save

`audits.pipeline.audit_file` runs them in order.
With a message library (`audits.library`), speech heard in earlier recordings
skips the transcribe stage.
"""
