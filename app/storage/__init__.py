"""Storage: one schema with ordered migrations, one way to connect, one module of SQL per area.

    connect     open a database by URL or path (SQLite or PostgreSQL); transactions that wait
    postgres    PostgreSQL behind the interface the modules use on SQLite; connection pools
    tables      every table as data: columns, keys, indexes, time columns
    schema      the migrations `holdguard db init` applies, on both databases
    checkpoint  SQLite WAL checkpoints kept out of the webhook's requests
    copy        `holdguard db copy`: every row from one database into another
    crm         customers, their products and issues; the suppression list
    catalog     hold flows: queues, segments, product aliases
    playlog     calls and every answer the webhook gave, with its cause
    live        calls on hold now, and one call's timeline
    recordings  Twilio recordings fetched for audit
    audits      audit results and the transcript search
    library     the message library: each distinct message heard, and the fleet view's counts

Only the pure core (app.core) is imported from here.
"""
