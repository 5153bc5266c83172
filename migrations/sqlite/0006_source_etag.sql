-- The entity tag of a direct upload's object when it was completed: later reads of the original carry
-- If-Match with it, so an object replaced through a still-valid presigned URL is never validated or processed.
ALTER TABLE media ADD COLUMN source_etag TEXT;
