//! Keyset pagination, the same in every List call: a page is read with one row more than it
//! shows, and that extra row tells whether another page follows; the token of the next page is
//! the id of the last row shown (the next page starts below it).

use uuid::Uuid;

/// Cuts `rows` (read with a limit of `limit + 1`) to `limit` and returns the next page's token:
/// the last row's id, or empty on the last page.
pub fn next_page_token<T>(rows: &mut Vec<T>, limit: i64, id: impl Fn(&T) -> Uuid) -> String {
    next_page_token_by(rows, limit, |row| id(row).to_string())
}

/// [`next_page_token`] for a list keyed by something else than a UUID (a sequence number): the
/// token is `key` of the last row shown.
pub fn next_page_token_by<T>(rows: &mut Vec<T>, limit: i64, key: impl Fn(&T) -> String) -> String {
    let limit = usize::try_from(limit).unwrap_or(0);
    let more = rows.len() > limit;
    rows.truncate(limit);
    match rows.last() {
        Some(last) if more => key(last),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(n: u128) -> Vec<Uuid> {
        (1..=n).map(Uuid::from_u128).collect()
    }

    #[test]
    fn the_extra_row_is_cut_and_names_the_next_page() {
        let mut rows = ids(3);
        assert_eq!(
            next_page_token(&mut rows, 2, |r| *r),
            Uuid::from_u128(2).to_string()
        );
        assert_eq!(rows, ids(2));
    }

    #[test]
    fn the_last_page_has_no_token() {
        let mut rows = ids(2);
        assert_eq!(next_page_token(&mut rows, 2, |r| *r), "");
        assert_eq!(rows, ids(2));
        let mut none: Vec<Uuid> = Vec::new();
        assert_eq!(next_page_token(&mut none, 2, |r| *r), "");
    }
}
