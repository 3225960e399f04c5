"""Storage: one schema with ordered migrations, one way to connect, one module of SQL per area.

    connect     open a database by URL or path; transactions that wait for the write lock
    schema      the tables and the migrations `holdguard db init` applies
    crm         customers, their products and issues; the suppression list
    catalog     hold flows: queues, segments, product aliases
    playlog     calls and every answer the webhook gave, with its cause
    recordings  Twilio recordings fetched for audit
    audits      audit results and the transcript search
    library     the message library: each distinct message heard, and the fleet view's counts

Only the pure core (app.core) is imported from here.
"""
