// Before processing: can this customer use this feature?
const check = await fetch('https://api.tansohq.com/api/v1/client/entitlements/check', {
method: 'POST',
headers: {
'Content-Type': 'application/json',
'Authorization': 'Bearer YOUR_API_KEY'
},
body: JSON.stringify({
customerReferenceId: 'cus_123',
featureKey: 'ai_summarization',
})
})
const { allowed } = await check.json()
if (!allowed) return res.status(403).json({ error: 'Usage limit reached' })
// Process the request, then report usage (same event call as Observe)
