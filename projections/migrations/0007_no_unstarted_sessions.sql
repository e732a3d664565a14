-- A session whose log holds only rejected inputs (a first message naming an unknown
-- agent, an approval sent to a mistyped session id, a failed fork) has no `sessions`
-- row any more (projections.fold.NOT_STARTED): its RequestRejected events stay in
-- `events`. Rows such sessions got before are removed, so a database projected
-- incrementally equals a rebuild. Should one of them start later, the projector rebuilds
-- its working row from its projected events.
DELETE FROM sessions WHERE phase = 'not_started';
