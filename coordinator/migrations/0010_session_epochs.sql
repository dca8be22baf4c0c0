-- A login session (JWT) carries its user's epoch at issue; raising the epoch (logout,
-- password change) ends every session issued before.
ALTER TABLE users ADD COLUMN session_epoch integer NOT NULL DEFAULT 0;
