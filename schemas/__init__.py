"""The event contract as Avro schemas, and the codec that puts records on the wire.

    schemas/avro/*.avsc          the current schema set: one named type per file,
                                 namespace turnlog.v1, mirroring agents/events.py exactly
    schemas/released/<v>/*.avsc  every released set, frozen; still readable, and the
                                 baseline of the evolution gate
    schemas.loader               reads a set and expands each envelope to one schema
    schemas.codec                encode_*/decode_* (Avro single-object encoding, or the
                                 registry framing 00 + schema id) and the canonical JSON
                                 form (event_to_dict, canonical_event_json)
    schemas.registry             the schemas in a Confluent-API schema registry (IO: the
                                 subjects, their compatibility, ids)
    schemas.compat               the evolution gate: backward + forward compatibility

Importing this package imports nothing else; `schemas.codec` prepares everything once on
its first import.
"""
