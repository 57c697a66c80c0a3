-- Saved insights and dashboards, in Postgres schema `tributary_query` (the
-- query service's own, beside auth's tables). Every row belongs to one
-- project; a dashboard's tiles can only name insights of its project: the
-- foreign keys include `project_id`.
CREATE TABLE IF NOT EXISTS insights (
    id          BIGSERIAL PRIMARY KEY,
    project_id  BIGINT NOT NULL,
    name        TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    kind        TEXT NOT NULL CHECK (kind IN ('trend', 'funnel', 'retention')),
    query       JSONB NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (project_id, id)
);

CREATE TABLE IF NOT EXISTS dashboards (
    id          BIGSERIAL PRIMARY KEY,
    project_id  BIGINT NOT NULL,
    name        TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (project_id, id)
);
CREATE INDEX IF NOT EXISTS dashboards_project ON dashboards (project_id, id);

-- A dashboard's insights in order, with layout hints: columns of a 12-column
-- grid, and rows. Deleting an insight takes it off every dashboard.
CREATE TABLE IF NOT EXISTS dashboard_tiles (
    project_id   BIGINT NOT NULL,
    dashboard_id BIGINT NOT NULL,
    position     INT NOT NULL,
    insight_id   BIGINT NOT NULL,
    width        SMALLINT NOT NULL CHECK (width BETWEEN 1 AND 12),
    height       SMALLINT NOT NULL CHECK (height BETWEEN 1 AND 12),
    PRIMARY KEY (dashboard_id, position),
    FOREIGN KEY (project_id, dashboard_id) REFERENCES dashboards (project_id, id) ON DELETE CASCADE,
    FOREIGN KEY (project_id, insight_id) REFERENCES insights (project_id, id) ON DELETE CASCADE
);
CREATE INDEX IF NOT EXISTS dashboard_tiles_insight ON dashboard_tiles (project_id, insight_id);
