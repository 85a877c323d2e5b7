//! Attachments over real HTTP on both databases, stored in a real local directory (ADR 0022):
//! the type comes from the bytes, downloads are byte-identical and only for those who may read
//! the conversation, HTML is never served as HTML, images get thumbnails, limits hold.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::TestDb;
use common::api::Api;
use reqwest::StatusCode;
use serde_json::Value;
use sha2::{Digest, Sha256};

/// A real PNG of `w`×`h` pixels.
fn png(w: u32, h: u32) -> Vec<u8> {
    let image = image::RgbImage::from_fn(w, h, |x, y| image::Rgb([(x % 256) as u8, (y % 256) as u8, 90]));
    let mut out = std::io::Cursor::new(Vec::new());
    image.write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}

/// Uploads `bytes` as `file_name` (claiming `claimed` as its type) into `conversation`.
async fn upload(
    api: &Api,
    token: &str,
    conversation: &str,
    query: &str,
    claimed: &str,
    bytes: Vec<u8>,
) -> (StatusCode, Value) {
    let response = api
        .http
        .post(format!(
            "{}/api/conversations/{conversation}/attachments?{query}",
            api.base
        ))
        .bearer_auth(token)
        .header("Content-Type", claimed)
        .body(bytes)
        .send()
        .await
        .unwrap();
    let status = response.status();
    (status, response.json().await.unwrap())
}

async fn download(api: &Api, token: &str, url: &str) -> reqwest::Response {
    api.http
        .get(format!("{}{url}", api.base))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
}

fn header<'a>(response: &'a reqwest::Response, name: &str) -> &'a str {
    response.headers().get(name).map_or("", |v| v.to_str().unwrap())
}

async fn files_are_stored_sniffed_and_served_only_to_their_readers(db: &TestDb) {
    let api = Api::start_with(db, &[("ATTACHMENT_MAX_BYTES", "200000")]).await;
    let admin = api.register("files@example.com").await;
    let (conversation, customer) = api.conversation(&admin.account_id).await;

    // A customer sends a picture, claiming it is HTML: the bytes say PNG.
    let picture = png(800, 400);
    let (status, body) = upload(
        &api,
        &customer,
        &conversation,
        "file_name=..%2F..%2Fholiday%20photo.png&body=Look",
        "text/html",
        picture.clone(),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let message = &body["data"];
    assert_eq!(
        (message["type"].as_str(), message["body"].as_str()),
        (Some("customer"), Some("Look"))
    );
    let file = &message["attachments"][0];
    assert_eq!(file["file_name"], "holiday photo.png", "the path is dropped");
    assert_eq!(file["content_type"], "image/png");
    assert_eq!(file["size"], picture.len());
    assert_eq!(file["sha256"], hex::encode(Sha256::digest(&picture)));
    let url = file["url"].as_str().unwrap().to_owned();
    assert!(
        url.starts_with(&format!("/api/attachments/{}/{conversation}/", admin.account_id)),
        "{url}"
    );

    // The agent sees it in the conversation and downloads it byte for byte, inline.
    let (_, messages) = api
        .get(&format!("/api/conversations/{conversation}/messages"), &admin.token)
        .await;
    assert_eq!(messages["data"][0]["attachments"][0]["url"], url.as_str());
    let response = download(&api, &admin.token, &url).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(header(&response, "content-type"), "image/png");
    assert_eq!(header(&response, "x-content-type-options"), "nosniff");
    assert!(header(&response, "content-disposition").starts_with("inline;"));
    assert!(header(&response, "content-security-policy").contains("sandbox"));
    assert_eq!(response.bytes().await.unwrap().to_vec(), picture);

    // Its thumbnail is a WebP of at most 320 px a side, the same the second time.
    let thumbnail_url = file["thumbnail_url"].as_str().unwrap();
    let mut thumbnails = Vec::new();
    for _ in 0..2 {
        let response = download(&api, &customer, thumbnail_url).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(header(&response, "content-type"), "image/webp");
        thumbnails.push(response.bytes().await.unwrap());
    }
    assert_eq!(thumbnails[0], thumbnails[1]);
    let small = image::load_from_memory(&thumbnails[0]).unwrap();
    assert_eq!((small.width(), small.height()), (320, 160));

    // An HTML page goes out as a download of unknown type, never as HTML.
    let page = b"<!DOCTYPE html><html><body><script>alert(document.cookie)</script></body></html>".to_vec();
    let (status, body) = upload(
        &api,
        &admin.token,
        &conversation,
        "file_name=page.html",
        "image/png",
        page.clone(),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let html = &body["data"]["attachments"][0];
    assert_eq!(html["content_type"], "text/html");
    assert!(html["thumbnail_url"].is_null());
    let response = download(&api, &customer, html["url"].as_str().unwrap()).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(header(&response, "content-type"), "application/octet-stream");
    assert_eq!(header(&response, "x-content-type-options"), "nosniff");
    assert_eq!(
        header(&response, "content-disposition"),
        "attachment; filename=\"page.html\"; filename*=UTF-8''page.html"
    );
    assert_eq!(response.bytes().await.unwrap().to_vec(), page);
    let response = download(
        &api,
        &admin.token,
        &format!("{}?thumbnail=true", html["url"].as_str().unwrap()),
    )
    .await;
    assert_eq!(
        response.status(),
        StatusCode::UNPROCESSABLE_ENTITY,
        "no thumbnail of a page"
    );

    // A note's file is for agents only.
    let (status, body) = upload(
        &api,
        &admin.token,
        &conversation,
        "file_name=notes.txt&private=true",
        "text/plain",
        b"internal".to_vec(),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["data"]["private"], true);
    let note_url = body["data"]["attachments"][0]["url"].as_str().unwrap().to_owned();
    assert_eq!(download(&api, &admin.token, &note_url).await.status(), StatusCode::OK);
    assert_eq!(
        download(&api, &customer, &note_url).await.status(),
        StatusCode::NOT_FOUND
    );
    let (status, _) = upload(
        &api,
        &customer,
        &conversation,
        "file_name=a.txt&private=true",
        "text/plain",
        b"x".to_vec(),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "customers write no notes");

    // Another customer of the account, another account's agent, a made-up key: not found.
    let (other_conversation, stranger) = api.conversation(&admin.account_id).await;
    let other_admin = api.register("other-files@example.com").await;
    for token in [&stranger, &other_admin.token] {
        assert_eq!(download(&api, token, &url).await.status(), StatusCode::NOT_FOUND);
        assert_eq!(
            download(&api, token, thumbnail_url).await.status(),
            StatusCode::NOT_FOUND
        );
    }
    let made_up = format!(
        "/api/attachments/{}/{conversation}/{}",
        admin.account_id,
        uuid::Uuid::now_v7()
    );
    let moved = url.replace(&conversation, &other_conversation);
    let lookups = [
        (admin.token.as_str(), made_up.as_str(), StatusCode::NOT_FOUND),
        (&admin.token, &moved, StatusCode::NOT_FOUND),
        (&stranger, &moved, StatusCode::NOT_FOUND),
        ("ntc_not-a-token", &url, StatusCode::UNAUTHORIZED),
    ];
    for (token, path, expected) in lookups {
        assert_eq!(download(&api, token, path).await.status(), expected, "{path}");
    }
    // An upload repeated with its client_message_id is one message and one stored file.
    let dir = format!("/tmp/netia-test-uploads/{}/{conversation}", admin.account_id);
    let stored = || {
        std::fs::read_dir(&dir)
            .unwrap()
            .filter(|f| !f.as_ref().unwrap().file_name().to_string_lossy().contains(".thumb"))
            .count()
    };
    let before = stored();
    let query = "file_name=scan.pdf&client_message_id=scan-1";
    let scan = || {
        upload(
            &api,
            &customer,
            &conversation,
            query,
            "application/pdf",
            b"%PDF-1.4 scan".to_vec(),
        )
    };
    let (first, saved) = scan().await;
    let (again, repeated) = scan().await;
    assert_eq!((first, again), (StatusCode::CREATED, StatusCode::OK));
    assert_eq!(saved["data"]["id"], repeated["data"]["id"]);
    assert_eq!(stored(), before + 1, "the repeat's copy is not kept");

    // Names lose invisible format characters (a right-to-left override would show "invoiceexe.pdf").
    let (_, body) = upload(
        &api,
        &customer,
        &conversation,
        "file_name=invoice%E2%80%AEfdp.exe",
        "text/plain",
        b"MZ".to_vec(),
    )
    .await;
    assert_eq!(body["data"]["attachments"][0]["file_name"], "invoicefdp.exe");

    // A thumbnail is named as one and does not carry the original's hash.
    let response = download(&api, &admin.token, thumbnail_url).await;
    assert_eq!(header(&response, "x-content-sha256"), "");
    assert!(header(&response, "content-disposition").contains("holiday photo.png.webp"));
    assert_eq!(
        header(&download(&api, &admin.token, &url).await, "x-content-sha256"),
        file["sha256"].as_str().unwrap()
    );

    // A personal API key reads the same URL the messages give.
    let (_, key) = api
        .post(
            "/api/personal_api_keys",
            Some(&admin.token),
            serde_json::json!({"name": "sync"}),
        )
        .await;
    let key = key["data"]["key"]
        .as_str()
        .or(key["data"]["token"].as_str())
        .unwrap()
        .to_owned();
    assert_eq!(download(&api, &key, &url).await.status(), StatusCode::OK);

    // A caption longer than 2,000 characters is refused with a reason (it travels in the URL).
    let long = format!("file_name=a.txt&body={}", "%C3%A9".repeat(2001));
    let (status, body) = upload(&api, &customer, &conversation, &long, "text/plain", b"x".to_vec()).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");

    // A file missing from the store is a 404, not a server error.
    let (_, body) = upload(
        &api,
        &customer,
        &conversation,
        "file_name=gone.txt",
        "text/plain",
        b"soon gone".to_vec(),
    )
    .await;
    let gone = body["data"]["attachments"][0]["url"].as_str().unwrap().to_owned();
    std::fs::remove_file(format!(
        "/tmp/netia-test-uploads/{}",
        gone.trim_start_matches("/api/attachments/")
    ))
    .unwrap();
    assert_eq!(
        download(&api, &admin.token, &gone).await.status(),
        StatusCode::NOT_FOUND
    );

    // Refused uploads: into someone else's conversation, past ATTACHMENT_MAX_BYTES, empty, unnamed.
    let refused: [(&str, &str, Vec<u8>, StatusCode); 6] = [
        (&stranger, "file_name=x.txt", b"x".to_vec(), StatusCode::NOT_FOUND),
        (
            &other_admin.token,
            "file_name=x.txt",
            b"x".to_vec(),
            StatusCode::NOT_FOUND,
        ),
        (
            &customer,
            "file_name=big.bin",
            vec![7; 200_001],
            StatusCode::PAYLOAD_TOO_LARGE,
        ),
        (
            &customer,
            "file_name=empty.txt",
            Vec::new(),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            &customer,
            "file_name=%2F",
            b"x".to_vec(),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (&customer, "body=no%20name", b"x".to_vec(), StatusCode::BAD_REQUEST),
    ];
    for (token, query, bytes, expected) in refused {
        let (status, body) = upload(&api, token, &conversation, query, "text/plain", bytes).await;
        assert_eq!(status, expected, "{query}: {body}");
    }
    let (_, messages) = api
        .get(&format!("/api/conversations/{conversation}/messages"), &admin.token)
        .await;
    assert_eq!(
        messages["data"].as_array().unwrap().len(),
        6,
        "refused uploads posted nothing"
    );
}

/// `netia attachments orphans` finds the files no message names — not the ones messages carry,
/// not files of another shape, not younger ones than asked — and `--delete` removes them.
async fn orphaned_files_are_listed_and_deleted(db: &TestDb) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("file://{}", dir.path().display());
    let api = Api::start_with(db, &[("ATTACHMENTS_URL", url.as_str())]).await;
    let admin = api.register("orphans@example.com").await;
    let (conversation, customer) = api.conversation(&admin.account_id).await;
    let (status, body) = upload(
        &api,
        &customer,
        &conversation,
        "file_name=kept.txt",
        "text/plain",
        b"kept".to_vec(),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let kept = body["data"]["attachments"][0]["url"].as_str().unwrap().to_owned();
    // What a crash between storing and posting leaves, and a file that is not Netia's.
    let folder = dir.path().join(&admin.account_id).join(&conversation);
    let stray = uuid::Uuid::now_v7().to_string();
    std::fs::write(folder.join(&stray), b"never posted").unwrap();
    std::fs::write(folder.join(format!("{stray}.thumb.webp")), b"its thumbnail").unwrap();
    std::fs::write(folder.join("notes.txt"), b"someone else's").unwrap();

    let env = [("ATTACHMENTS_URL", url.as_str())];
    let listed = |args: &[&str]| -> Vec<String> {
        let printed = db.netia_with(&[&["attachments", "orphans", "--json"], args].concat(), &env);
        let found: Value = serde_json::from_str(&printed).unwrap();
        let mut keys: Vec<String> = found
            .as_array()
            .unwrap()
            .iter()
            .map(|o| o["key"].as_str().unwrap().to_owned())
            .collect();
        keys.sort();
        keys
    };
    let prefix = format!("{}/{conversation}/{stray}", admin.account_id);
    let expected = vec![prefix.clone(), format!("{prefix}.thumb.webp")];
    assert_eq!(listed(&["--older-than-hours", "0"]), expected);
    assert!(listed(&[]).is_empty(), "younger than the default 24 hours");
    assert_eq!(listed(&["--older-than-hours", "0", "--delete"]), expected);
    assert!(listed(&["--older-than-hours", "0"]).is_empty(), "deleted");
    assert!(folder.join("notes.txt").exists(), "not Netia's: left alone");
    assert_eq!(download(&api, &admin.token, &kept).await.status(), StatusCode::OK);
}

on_both_backends!(
    files_are_stored_sniffed_and_served_only_to_their_readers,
    orphaned_files_are_listed_and_deleted
);

/// The message is saved but its read model is held up (a lock on PostgreSQL): the upload answers
/// 503, and the file stays for the message that was saved — it downloads once the read model has it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_a_file_stays_when_its_message_is_saved_but_not_readable_yet() {
    let Some(db) = TestDb::postgres().await else { return };
    let common::Raw::Postgres(pool) = &db.raw else {
        unreachable!()
    };
    let api = Api::start(&db).await;
    let admin = api.register("slow-files@example.com").await;
    let (conversation, customer) = api.conversation(&admin.account_id).await;
    let mut lock = pool.begin().await.unwrap();
    sqlx::query("LOCK TABLE conversation_messages IN EXCLUSIVE MODE")
        .execute(&mut *lock)
        .await
        .unwrap();
    let (status, body) = upload(
        &api,
        &customer,
        &conversation,
        "file_name=late.txt",
        "text/plain",
        b"late".to_vec(),
    )
    .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    lock.commit().await.unwrap();
    let mut listed = Value::Null;
    for _ in 0..100 {
        listed = api
            .get(&format!("/api/conversations/{conversation}/messages"), &admin.token)
            .await
            .1;
        if listed["data"].as_array().is_some_and(|m| !m.is_empty()) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let url = listed["data"][0]["attachments"][0]["url"]
        .as_str()
        .expect("the message was saved");
    let response = download(&api, &customer, url).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.bytes().await.unwrap().as_ref(), b"late");
    db.cleanup().await;
}
