"""Sans-I/O media core: SDP, offer/answer, RTP/RTCP, codecs, jitter buffer, DTMF, WAV.

Nothing in this package opens a socket, starts a task or talks to Redis: every object takes bytes
and the current time (``now``, seconds as float, from an injected clock) and returns events and
bytes. The media process owns the sockets and the 20 ms tick and feeds these objects.

App-facing audio is always 20 ms frames of 8 kHz mono signed 16-bit little-endian PCM
(160 samples, 320 bytes); see :mod:`sessiond.media.codecs`.
"""
