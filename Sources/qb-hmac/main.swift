import QBTools

QBTool.hmac.main()
