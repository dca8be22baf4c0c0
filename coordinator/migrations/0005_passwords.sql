-- Login sessions: a user may have a password (an argon2id PHC string) besides API tokens.
-- NULL means the user cannot log in with a password, only use tokens.
ALTER TABLE users ADD COLUMN password_hash text CHECK (password_hash IS NULL OR password_hash LIKE '$argon2id$%');
