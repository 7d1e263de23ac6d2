"""The wire protocol of ``/ws``: message structs, their one decoder and encoder, id rules."""
