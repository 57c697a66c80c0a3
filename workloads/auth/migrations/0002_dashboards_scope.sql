-- A third key scope: `dashboards` keys do what `query` keys do, and also
-- save insights and dashboards in the query service.
ALTER TABLE api_keys DROP CONSTRAINT IF EXISTS api_keys_scope_check;
ALTER TABLE api_keys ADD CONSTRAINT api_keys_scope_check
    CHECK (scope IN ('capture', 'query', 'dashboards'));
