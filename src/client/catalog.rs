//! A catalog update sent to a running index service: a [`CatalogUpdate`] as
//! the `ApplyCatalogUpdate` stream of changes, with the admin token.

use tonic::transport::Channel;

use crate::catalog::CatalogUpdate;
use crate::proto::v1::{
    CatalogChange, CatalogUpdateResponse, ItemSid, Sid, Token, UpsertEmbedding, catalog_change,
};

/// The changes of `update` in the order the service applies them: SID
/// upserts, embedding upserts, deletes.
pub fn changes(update: &CatalogUpdate) -> Vec<CatalogChange> {
    let change = |c| CatalogChange { change: Some(c) };
    let mut out = Vec::new();
    if let Some(table) = &update.upsert_sids {
        out.extend(table.iter().map(|(id, tokens)| {
            change(catalog_change::Change::UpsertSid(ItemSid {
                item_id: id.to_string(),
                sid: Some(Sid {
                    tokens: tokens
                        .iter()
                        .map(|t| Token {
                            layer: u32::from(t.layer),
                            code: t.code,
                        })
                        .collect(),
                }),
            }))
        }));
    }
    if let Some(e) = &update.upsert_embeddings {
        out.extend(
            e.ids
                .iter()
                .zip(e.values.chunks_exact(e.dim.max(1)))
                .map(|(id, embedding)| {
                    change(catalog_change::Change::UpsertEmbedding(UpsertEmbedding {
                        item_id: id.clone(),
                        embedding: embedding.to_vec(),
                    }))
                }),
        );
    }
    out.extend(
        update
            .deletes
            .iter()
            .map(|id| change(catalog_change::Change::DeleteItemId(id.clone()))),
    );
    out
}

/// Streams `changes` to the service behind `channel` with
/// `authorization: Bearer <admin_token>`; all of them are applied or none.
pub async fn apply(
    channel: Channel,
    admin_token: &str,
    changes: Vec<CatalogChange>,
) -> Result<CatalogUpdateResponse, tonic::Status> {
    let mut req = tonic::Request::new(tokio_stream::iter(changes));
    let value = format!("Bearer {admin_token}")
        .parse()
        .map_err(|_| tonic::Status::invalid_argument("the admin token is not valid header text"))?;
    req.metadata_mut().insert("authorization", value);
    super::index_client(channel)
        .apply_catalog_update(req)
        .await
        .map(tonic::Response::into_inner)
}
