"""The pure core: the hold policy, times, phones, product identity, records and the audit's results.

Nothing here touches Flask, click, a database or numpy; everything above imports it.
"""
