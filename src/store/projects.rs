//! The project registry in state.db (migration 4): name → repository, branch, checked-out
//! commit and the image last built. Written only by root's admin commands; read by the broker.

use super::state::{Db, Error};
use rusqlite::{params, OptionalExtension};

/// One registered project.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ProjectRow {
    pub name: String,
    pub repo: String,
    /// Empty: the repository's default branch.
    pub branch: String,
    /// The commit checked out under `projects/<name>`.
    pub commit_id: String,
    /// The image last built (empty: the repository has no Podfile, sessions use the default).
    pub image: String,
    pub created_at: i64,
    pub updated_at: i64,
}

fn row_from(r: &rusqlite::Row<'_>) -> rusqlite::Result<ProjectRow> {
    Ok(ProjectRow {
        name: r.get(0)?,
        repo: r.get(1)?,
        branch: r.get(2)?,
        commit_id: r.get(3)?,
        image: r.get(4)?,
        created_at: r.get(5)?,
        updated_at: r.get(6)?,
    })
}

const COLUMNS: &str = "name, repo, branch, commit_id, image, created_at, updated_at";

impl Db {
    pub fn project(&self, name: &str) -> Result<Option<ProjectRow>, Error> {
        self.conn
            .query_row(
                &format!("SELECT {COLUMNS} FROM projects WHERE name=?1"),
                params![name],
                row_from,
            )
            .optional()
            .map_err(Error::Sql)
    }

    pub fn projects(&self) -> Result<Vec<ProjectRow>, Error> {
        let mut st = self
            .conn
            .prepare(&format!("SELECT {COLUMNS} FROM projects ORDER BY name"))?;
        let rows = st.query_map([], row_from)?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    }

    /// Inserts a new project; fails (constraint) if the name is taken.
    pub fn insert_project(&self, p: &ProjectRow) -> Result<(), Error> {
        self.conn.execute(
            &format!("INSERT INTO projects ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"),
            params![
                p.name,
                p.repo,
                p.branch,
                p.commit_id,
                p.image,
                p.created_at,
                p.updated_at
            ],
        )?;
        Ok(())
    }

    /// Records a new checkout and image of a project.
    pub fn update_project(
        &self,
        name: &str,
        commit_id: &str,
        image: &str,
        t: i64,
    ) -> Result<(), Error> {
        self.conn.execute(
            "UPDATE projects SET commit_id=?2, image=?3, updated_at=?4 WHERE name=?1",
            params![name, commit_id, image, t],
        )?;
        Ok(())
    }

    pub fn delete_project(&self, name: &str) -> Result<(), Error> {
        self.conn
            .execute("DELETE FROM projects WHERE name=?1", params![name])?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn registry_round_trip() {
        let db = Db::open_in_memory().unwrap();
        let mut p = ProjectRow {
            name: "backend".into(),
            repo: "file:///srv/git/backend".into(),
            branch: "main".into(),
            commit_id: "abc".into(),
            image: "podspawn-project-backend:0123456789ab".into(),
            created_at: 1,
            updated_at: 1,
        };
        db.insert_project(&p).unwrap();
        assert!(db.insert_project(&p).is_err(), "a name is registered once");
        assert_eq!(db.project("backend").unwrap().unwrap(), p);
        db.update_project("backend", "def", "img:2", 5).unwrap();
        p.commit_id = "def".into();
        p.image = "img:2".into();
        p.updated_at = 5;
        assert_eq!(db.projects().unwrap(), vec![p]);
        db.delete_project("backend").unwrap();
        assert!(db.project("backend").unwrap().is_none());
    }
}
