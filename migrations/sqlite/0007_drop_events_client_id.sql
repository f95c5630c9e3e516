-- A message's (author, client_id) is kept unique by the group-commit writer,
-- the only writer of events: it holds a hash of every key of the
-- conversations it touches and looks a repeated one up in the table. The
-- index did the same job at the price of one more leaf, per conversation,
-- rewritten into the WAL by every batch carrying one of its messages.
DROP INDEX events_client_id;
