"""The host-link wire protocol: the contract between the gateware and the host driver.

:mod:`protocol.wire` holds every fact both sides must agree on (sync bytes,
command table, link status codes, CRC, frame and payload layouts);
:mod:`protocol.link_model` is the byte-exact Python reference of the device
side (hw/host_link.py is checked against it).  docs/protocol.md is the prose
version.  Neither module imports hw/ or host/.
"""
